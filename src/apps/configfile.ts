import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { MetanetError } from '../core/errors.js';

/**
 * Read a config file: JSON, or YAML when the name ends in `.yaml`/`.yml` (the `yaml` package,
 * loaded only then). ECONFIG names the file and what is wrong with it.
 */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new MetanetError('ECONFIG', `cannot read ${file}: ${(e as Error).message}`);
  }
  return parseConfigText(text, file);
}

export function parseConfigText(text: string, file: string): unknown {
  if (/\.ya?ml$/i.test(file)) {
    // createRequire keeps this synchronous while loading yaml only for YAML files.
    const yaml = requireYaml();
    try {
      return yaml.parse(text, { uniqueKeys: true, prettyErrors: true });
    } catch (e) {
      throw new MetanetError('ECONFIG', `${file} is not valid YAML: ${(e as Error).message}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MetanetError('ECONFIG', `${file} is not JSON: ${(e as Error).message}`);
  }
}

type Yaml = { parse(text: string, options: { uniqueKeys: boolean; prettyErrors: boolean }): unknown };
let yamlModule: Yaml | undefined;
function requireYaml(): Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as Yaml;
  return yamlModule;
}
