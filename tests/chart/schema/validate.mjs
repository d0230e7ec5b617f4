// Checks Kubernetes objects against the JSON schemas of kubernetes-models (generated from
// the Kubernetes OpenAPI spec) and @kubernetes-models/prometheus-operator (from the
// operator's CRDs): types, required fields, enums, patterns and formats such as
// quantities. It does NOT reject unknown fields (the schemas allow additional properties).
//
//   node validate.mjs < objects.json     (a JSON array of objects)
// Prints "<kind>/<name>: valid" or the errors, one line per object; exits 1 if any failed.
import fs from "fs";

const modules = {
  "v1": "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "autoscaling/v1": "kubernetes-models/autoscaling/v1",
  "autoscaling/v2": "kubernetes-models/autoscaling/v2",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

let failed = 0;
for (const obj of JSON.parse(fs.readFileSync(0, "utf8"))) {
  const name = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
  const mod = modules[obj.apiVersion];
  const Model = mod && (await import(mod))[obj.kind];
  if (!Model) {
    console.log(`${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`${name}: valid`);
  } catch (e) {
    console.log(`${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
