// Output helpers: machine description, fixed-width tables, atomic JSON.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';

function gitDescribe(cwd) {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd, stdio: ['ignore', 'pipe', 'ignore'],
    }).toString().trim() !== '';
    return { commit, dirty };
  } catch {
    return null;
  }
}

/** What a reader of a results file needs to know about where it came from. */
export function machineInfo(extra = {}, repoDir = process.cwd()) {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    cpuModel: cpus[0]?.model ?? 'unknown',
    logicalCpus: cpus.length,
    totalMemoryBytes: os.totalmem(),
    platform: process.platform,
    arch: process.arch,
    osRelease: os.release(),
    node: process.version,
    // 1/5/15-minute load averages: a busy machine explains surprising numbers.
    loadAverage: os.loadavg(),
    git: gitDescribe(repoDir),
    ...extra,
  };
}

/** Writes JSON to a temporary file in the target directory, then renames it into place. */
export function writeJsonAtomic(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  fs.renameSync(tmp, file);
}

/**
 * Fixed-width text table. columns: [{ key, title, align: 'left' | 'right' }];
 * rows hold preformatted strings. A row `null` prints a separator line.
 */
export function formatTable(columns, rows) {
  const widths = columns.map((c) => Math.max(c.title.length, ...rows.filter(Boolean).map((r) => String(r[c.key] ?? '').length)));
  const line = (cells) => cells.map((cell, i) => (columns[i].align === 'left' ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const out = [line(columns.map((c) => c.title)), rule];
  for (const r of rows) out.push(r ? line(columns.map((c) => String(r[c.key] ?? ''))) : '');
  return out.join('\n');
}

/** Number formatting that keeps table columns short. */
export function fixed(value, digits = 2) {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

export function microseconds(seconds) {
  const us = seconds * 1e6;
  if (!Number.isFinite(us)) return '-';
  return us >= 1000 ? us.toFixed(0) : us >= 100 ? us.toFixed(1) : us.toFixed(2);
}
