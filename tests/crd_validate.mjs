// Validates Kubernetes custom resources against their published CRD schemas, offline.
// Usage: node tests/crd_validate.mjs <dir with node_modules>  <  [{"module": "...", "export": "...", "object": {...}}]
// Prints one JSON array with {"ok": true} or {"ok": false, "error": "..."} per input, in order.
// The models come from npm's @kubernetes-models packages (scripts/install-crd-validators.sh); each class's
// validate() runs the CRD's OpenAPI schema compiled to a JSON-schema validator and throws with the failing path.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modulesDir = join(process.argv[2], "node_modules");
const items = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const item of items) {
  try {
    const module = await import(pathToFileURL(join(modulesDir, `${item.module}.js`)).href);
    const Model = module[item.export];
    if (typeof Model !== "function") throw new Error(`${item.module} exports no ${item.export}`);
    new Model(item.object).validate();
    results.push({ ok: true });
  } catch (error) {
    results.push({ ok: false, error: String(error && error.message ? error.message : error) });
  }
}
process.stdout.write(JSON.stringify(results));
