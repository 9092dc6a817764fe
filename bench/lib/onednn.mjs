// Loads the oneDNN comparison addon (bench/onednn), building it with cmake-js
// into build-onednn/ when it is missing or older than its sources. It links
// the system oneDNN (Debian: apt-get install libdnnl-dev).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const sourceDir = path.join(repo, 'bench', 'onednn');
const buildDir = path.join(repo, 'build-onednn');
const addonPath = path.join(buildDir, 'Release', 'onednn_bn.node');

const mtime = (file) => fs.statSync(file).mtimeMs;

function stale() {
  if (!fs.existsSync(addonPath)) return true;
  const built = mtime(addonPath);
  return fs.readdirSync(sourceDir).some((name) => mtime(path.join(sourceDir, name)) > built);
}

// cmake-js downloads Node's headers unless npm names a local copy (npm sets
// npm_config_nodedir for scripts it runs); outside npm, point it at the
// running Node's own headers when they are installed, as they are here.
function buildEnv() {
  const env = { ...process.env };
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (!env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
    env.npm_config_nodedir = prefix;
  }
  return env;
}

/**
 * The addon's exports: create, run, outputs, setThreads, implementation, version
 * (see bench/onednn/onednn_bn.cc). Throws an Error whose message says what to
 * install when oneDNN or the build is missing.
 */
export function loadOneDnn({ log = (text) => process.stderr.write(text) } = {}) {
  if (stale()) {
    log(`building the oneDNN comparison addon (${path.relative(repo, sourceDir)} -> ${path.relative(repo, buildDir)})...\n`);
    const cmakeJs = path.join(repo, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
    try {
      execFileSync(process.execPath, [cmakeJs, 'compile', '-d', sourceDir, '--out', buildDir], {
        cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: buildEnv(),
      });
    } catch (error) {
      const output = `${error.stdout ?? ''}${error.stderr ?? ''}`;
      const missing = /oneDNN not found|dnnl\.hpp/.test(output);
      throw new Error(missing
        ? 'oneDNN is not installed: on Debian, apt-get install libdnnl-dev'
        : `building the oneDNN comparison addon failed:\n${output.split('\n').slice(-25).join('\n')}`);
    }
  }
  return createRequire(import.meta.url)(addonPath);
}
