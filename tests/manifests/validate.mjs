// Validates deployment files offline, with published schemas and no cluster or Docker engine:
//   node validate.mjs FILE...
// A file whose name contains "compose" is checked against the Compose specification's JSON
// schema (the copy dclint ships); every other YAML document against the Kubernetes schema of its
// apiVersion and kind (kubernetes-models, generated from Kubernetes' OpenAPI; the Prometheus
// Operator's for monitoring.coreos.com). Prints one line per document and exits 1 on any problem.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import Ajv from "ajv";
import { parseAllDocuments } from "yaml";

let failed = false;

function report(file, what, errors) {
  if (errors.length === 0) {
    console.log(`${file}: ${what}: ok`);
    return;
  }
  failed = true;
  for (const error of errors) {
    console.log(`${file}: ${what}: ${error}`);
  }
}

function documents(file) {
  const parsed = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true, merge: true });
  const problems = parsed.flatMap((d) => [...d.errors, ...d.warnings].map((e) => e.message));
  if (problems.length > 0) {
    report(file, "YAML", problems);
    return [];
  }
  return parsed.map((d) => d.toJS()).filter((d) => d !== null);
}

function composeValidator() {
  // The package exports no path to it; it sits beside the package.json it does export.
  const schema = JSON.parse(readFileSync(new URL("node_modules/dclint/schemas/compose.schema.json", import.meta.url), "utf8"));
  // It names draft-07 by its https address, which Ajv (draft-07 by default) knows by http.
  delete schema.$schema;
  // The specification's formats (durations, ports) are checked by Compose itself, not by JSON schema.
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  return ajv.compile(schema);
}

async function kubernetesModel(apiVersion, kind) {
  const module = apiVersion.startsWith("monitoring.coreos.com/")
    ? `@kubernetes-models/prometheus-operator/${apiVersion}`
    : `kubernetes-models/${apiVersion}`;
  try {
    return (await import(module))[kind];
  } catch {
    return undefined;
  }
}

for (const file of process.argv.slice(2)) {
  if (basename(file).includes("compose")) {
    const validate = composeValidator();
    for (const document of documents(file)) {
      const valid = validate(document);
      report(file, "compose", valid ? [] : validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` '${e.params.additionalProperty}'` : ""}`));
    }
    continue;
  }

  for (const document of documents(file)) {
    const what = `${document.kind}/${document.metadata?.name}`;
    const Model = document.apiVersion && document.kind ? await kubernetesModel(document.apiVersion, document.kind) : undefined;
    if (!Model) {
      report(file, what, [`no schema for apiVersion ${document.apiVersion} kind ${document.kind}`]);
      continue;
    }
    try {
      new Model(document).validate();
      report(file, what, []);
    } catch (error) {
      report(file, what, [error.message]);
    }
  }
}

if (process.argv.length <= 2) {
  console.log("usage: node validate.mjs FILE...");
  failed = true;
}
process.exit(failed ? 1 : 0);
