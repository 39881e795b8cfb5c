// A gaffer hook: keep the agent's hands off protected paths (secrets, keys, `.git`), and turn
// a force push into a safer `--force-with-lease`.
//
// - preTool: a `write_file` or `edit` of a protected path is denied; a `run_command` with
//   `git push --force` (or `-f`) is rewritten to `--force-with-lease`; the rest is allowed.
// - onEdit: an edit of a protected path is denied, with a finding.
// - onDiff: one finding per changed file whose path (or path before a rename) is protected;
//   a change with none is allowed.
//
// A pattern without `/` matches a file or directory name anywhere (`.env` matches
// `config/.env`); a pattern with `/` matches from the repository root (`secrets/` matches
// everything under `secrets`). `*` stands for any characters within one name.
//
// Config (the `config` table of the `[[plugins.hooks]]` entry in gaffer.toml):
//
// | field | default | meaning |
// |---|---|---|
// | `protected` | `[".env", ".env.*", "*.pem", ".git/"]` | path patterns the agent may not write |
//
// Values as jco's QuickJS backend gives them: the world's functions and record fields in
// camelCase, variants as `{ tag: 'deny', val: ... }`; an `option` that is none arrives as null
// (test with `!= null`) and is returned as undefined (or left out).

import { config } from 'gaffer:plugin/host@0.1.0';

// Protected patterns when the config gives none.
const DEFAULT_PROTECTED = ['.env', '.env.*', '*.pem', '.git/'];

// Tools that write a file named by their `path` argument.
const WRITE_TOOLS = ['write_file', 'edit'];

export function preTool(task, call) {
  const protectedPatterns = protectedFromConfig(config());
  let args;
  try {
    args = JSON.parse(call.arguments);
  } catch {
    args = undefined;
  }
  if (call.name === 'run_command') {
    const rewritten = saferPush(args);
    return rewritten === undefined ? { tag: 'allow' } : { tag: 'rewrite', val: rewritten };
  }
  if (!WRITE_TOOLS.includes(call.name)) {
    return { tag: 'allow' };
  }
  // Fail closed: a write whose path cannot be read is denied.
  const path = isObject(args) ? args.path : undefined;
  if (typeof path !== 'string') {
    return {
      tag: 'deny',
      val: `\`${call.name}\` needs a JSON object with a \`path\` argument; call it again with one`,
    };
  }
  const reason = whyProtected(protectedPatterns, path);
  return reason === undefined ? { tag: 'allow' } : { tag: 'deny', val: reason };
}

export function onEdit(task, edit) {
  const protectedPatterns = protectedFromConfig(config());
  const message = whyProtected(protectedPatterns, edit.path);
  if (message === undefined) {
    return { tag: 'allow' };
  }
  return { tag: 'deny', val: [{ message, path: edit.path }] };
}

export function onDiff(task, diff) {
  const protectedPatterns = protectedFromConfig(config());
  const findings = [];
  for (const file of diff.files) {
    let message = whyProtected(protectedPatterns, file.path);
    if (message === undefined && file.oldPath != null) {
      message = whyProtected(protectedPatterns, file.oldPath);
    }
    if (message !== undefined) {
      findings.push({ message, path: file.path });
    }
  }
  return findings.length === 0 ? { tag: 'allow' } : { tag: 'deny', val: findings };
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// The arguments of a `run_command` with `git push --force` (or `-f`) made safer, if it is one.
function saferPush(args) {
  if (!isObject(args) || typeof args.command !== 'string') {
    return undefined;
  }
  const words = args.command.split(/\s+/).filter((w) => w !== '');
  const pushes = words.some((w, i) => w === 'git' && words[i + 1] === 'push');
  const force = (w) => w === '--force' || w === '-f';
  if (!pushes || !words.some(force)) {
    return undefined;
  }
  const safer = words.map((w) => (force(w) ? '--force-with-lease' : w));
  return JSON.stringify({ ...args, command: safer.join(' ') });
}

// Why `path` may not be written, if it may not.
function whyProtected(protectedPatterns, path) {
  const names = normalize(path);
  const pattern = protectedPatterns.find((p) => matches(p, names));
  if (pattern === undefined) {
    return undefined;
  }
  return (
    `\`${names.join('/')}\` is protected (matches \`${pattern}\`): ` +
    'change it by hand, not through the agent'
  );
}

// The names of a relative path, with `.`, `..` and empty names resolved.
function normalize(path) {
  const names = [];
  for (const name of path.split(/[/\\]/)) {
    if (name === '' || name === '.') {
      continue;
    }
    if (name === '..') {
      names.pop();
    } else {
      names.push(name);
    }
  }
  return names;
}

// Whether a pattern matches a path given by its names.
function matches(pattern, names) {
  if (!pattern.includes('/')) {
    return names.some((name) => wildcard(pattern, name));
  }
  const parts = pattern.split('/').filter((p) => p !== '');
  return (
    parts.length > 0 &&
    parts.length <= names.length &&
    parts.every((p, i) => wildcard(p, names[i]))
  );
}

// Whether `name` matches `pattern`, where `*` stands for any run of characters.
function wildcard(pattern, name) {
  let pi = 0;
  let si = 0;
  // Where the last `*` was, and where in `name` its match ends so far.
  let star;
  while (si < name.length) {
    if (pi < pattern.length && pattern[pi] === '*') {
      star = [pi, si];
      pi += 1;
    } else if (pi < pattern.length && pattern[pi] === name[si]) {
      pi += 1;
      si += 1;
    } else if (star !== undefined) {
      pi = star[0] + 1;
      si = star[1] + 1;
      star = [star[0], star[1] + 1];
    } else {
      return false;
    }
  }
  return [...pattern.slice(pi)].every((c) => c === '*');
}

// `protected` from the config JSON (an object, `{}` when gaffer.toml gives none).
function protectedFromConfig(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`invalid config: ${e.message}`);
  }
  const value = parsed?.protected ?? DEFAULT_PROTECTED;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new Error(
      `invalid config: \`protected\` must be a list of strings, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}
