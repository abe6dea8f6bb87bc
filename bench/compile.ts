/**
 * Benchmarks measure the code as production runs it: compiled by TypeScript (`npm run build`
 * emits the same JavaScript), not under tsx, whose esbuild transform names every closure as it is
 * made (`__name()`, an Object.defineProperty per closure) and reaches other modules' exports
 * through getters — several µs a request on the hot paths, and not what a deployment runs.
 * `transpile()` compiles source files one by one (transpileModule: no type check) into a
 * directory with the same layout, ESM.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Every `.ts` file under `dir` (relative to `root`). */
export function tsFiles(root: string, dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(root, join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/**
 * Compile `files` (paths relative to a root) into `out` (emptied first), each from the root
 * `from(file)` gives; a file missing there is skipped. Writes a package.json marking `out` ESM.
 */
export async function transpile(
  out: string,
  files: readonly string[],
  from: (file: string) => string,
): Promise<void> {
  const { default: ts } = await import('typescript');
  rmSync(out, { recursive: true, force: true });
  for (const f of files) {
    const root = from(f);
    if (!existsSync(join(root, f))) continue;
    const js = ts.transpileModule(readFileSync(join(root, f), 'utf8'), {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    }).outputText;
    mkdirSync(dirname(join(out, f)), { recursive: true });
    writeFileSync(join(out, f.replace(/\.ts$/, '.js')), js);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
}
