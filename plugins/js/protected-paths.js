// protected-paths, in JavaScript: the same hook as plugins/protected-paths (Rust), decision for
// decision.
//
// - preTool: a call to one of `write_tools` is denied when a path argument (`path`, `file_path`,
//   `paths`, `old_path`, `new_path`, `from`, `to`) matches a protected glob. A write call whose
//   arguments are not a JSON object, or that names no path, is denied too: the hook fails
//   closed. Other tools are allowed (a write by a shell command is caught by onDiff).
// - onEdit: an edit of a protected path is denied.
// - onDiff: one finding per changed file whose path (or path before a rename) is protected.
//
// Paths are normalised lexically (`a/./b`, `a/../b`, a leading `/`) before matching. A glob
// without `/` matches a name anywhere; a glob that matches a directory covers what is below it.
//
// Config (every field optional): globs ([".env", ".env.*", "**/migrations/**", ".git/**"]),
// write_tools (["write_file", "edit", "delete_file"]).
//
// Build (jco, QuickJS backend):
//   jco componentize protected-paths.js -w ../../wit/0.1.0 -n hook --backend quickjs \
//       --backend-qjs-disable-async -o protected-paths.wasm

import { config as hostConfig } from 'gaffer:plugin/host@0.1.0';
import { givenFields } from './plugin-config.js';

const DEFAULTS = {
  globs: ['.env', '.env.*', '**/migrations/**', '.git/**'],
  write_tools: ['write_file', 'edit', 'delete_file'],
};

// Argument keys that carry a path, in the order they are checked.
const PATH_KEYS = ['path', 'file_path', 'paths', 'old_path', 'new_path', 'from', 'to'];

export function preTool(task, call) {
  return preToolWith(parseConfig(hostConfig()), call);
}

export function onEdit(task, edit) {
  return onEditWith(parseConfig(hostConfig()), edit);
}

export function onDiff(task, diff) {
  return onDiffWith(parseConfig(hostConfig()), diff);
}

/** The config with defaults filled in; an unknown key or a bad value is an error. */
function parseConfig(text) {
  const config = { ...DEFAULTS };
  for (const [key, value] of Object.entries(givenFields(text))) {
    if (!(key in DEFAULTS)) {
      throw new Error(`invalid config: unknown field \`${key}\`, expected \`globs\` or \`write_tools\``);
    }
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
      throw new Error(`invalid config: \`${key}\`: expected a list of strings`);
    }
    config[key] = value;
  }
  return config;
}

function preToolWith(config, call) {
  const tool = call.name;
  if (!config.write_tools.includes(tool)) return { tag: 'allow' };
  let args;
  try {
    args = JSON.parse(call.arguments);
  } catch (e) {
    return {
      tag: 'deny',
      val: `the arguments of \`${tool}\` are not valid JSON (${e.message}), so its path cannot be `
        + 'checked against the protected paths; call it again with a JSON object',
    };
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    return {
      tag: 'deny',
      val: `the arguments of \`${tool}\` are not a JSON object, so its path cannot be checked `
        + 'against the protected paths; call it again with a JSON object',
    };
  }
  const paths = [];
  for (const key of PATH_KEYS) {
    const value = Object.hasOwn(args, key) ? args[key] : undefined;
    if (typeof value === 'string') paths.push(value);
    else if (Array.isArray(value)) paths.push(...value.filter((item) => typeof item === 'string'));
  }
  if (paths.length === 0) {
    return {
      tag: 'deny',
      val: `\`${tool}\` was called without a \`path\` argument, so it cannot be checked against `
        + 'the protected paths; call it again with `path`',
    };
  }
  for (const path of paths) {
    const reason = isProtected(config, path);
    if (reason !== null) return { tag: 'deny', val: reason };
  }
  return { tag: 'allow' };
}

function onEditWith(config, edit) {
  const message = isProtected(config, edit.path);
  if (message === null) return { tag: 'allow' };
  return { tag: 'deny', val: [{ message, path: edit.path, line: undefined }] };
}

function onDiffWith(config, diff) {
  const findings = [];
  for (const file of diff.files) {
    let message = isProtected(config, file.path);
    if (message === null && file.oldPath !== undefined && file.oldPath !== null) {
      const old = isProtected(config, file.oldPath);
      if (old !== null) message = `${old} (renamed to \`${file.path}\`)`;
    }
    if (message !== null) findings.push({ message, path: file.path, line: undefined });
  }
  return findings.length === 0 ? { tag: 'allow' } : { tag: 'deny', val: findings };
}

/** The reason `path` is protected, or null. */
function isProtected(config, path) {
  const normalized = normalize(path);
  for (const pattern of config.globs) {
    if (matches(pattern, normalized)) {
      return `\`${normalized}\` is protected (matches \`${pattern}\`); change it by hand or ask a person`;
    }
  }
  return null;
}

/** Resolve `.`, `..` and empty segments lexically; no leading `/`. */
function normalize(path) {
  const segments = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return segments.join('/');
}

function stripLeading(path) {
  for (;;) {
    if (path.startsWith('./')) path = path.slice(2);
    else if (path.startsWith('/')) path = path.slice(1);
    else return path;
  }
}

/** Whether a gitignore-like glob matches a path (the rules of gaffer_sdk::glob). */
function matches(pattern, rawPath) {
  const path = stripLeading(rawPath.replace(/\/+$/, ''));
  if (path === '') return false;
  let pat = pattern.trim();
  let dirOnly = false;
  if (pat.length > 1 && pat.endsWith('/')) {
    pat = pat.replace(/\/+$/, '');
    dirOnly = true;
  }
  let anchored = false;
  for (;;) {
    if (pat.startsWith('./')) [pat, anchored] = [pat.slice(2), true];
    else if (pat.startsWith('/')) [pat, anchored] = [pat.slice(1), true];
    else break;
  }
  if (pat === '') return false;
  if (!anchored && !pat.includes('/')) {
    // A bare name matches any segment; with a trailing `/`, only a directory's.
    const segments = path.split('/');
    return segments.some((segment, i) => (!dirOnly || i < segments.length - 1) && globMatch(pat, segment));
  }
  if (!dirOnly && globMatch(pat, path)) return true;
  // A pattern that matches a directory covers everything below it.
  for (let i = 0; i < path.length; i += 1) {
    if (path[i] === '/' && globMatch(pat, path.slice(0, i))) return true;
  }
  return false;
}

const compiled = new Map();

function globMatch(pattern, text) {
  const body = pattern.replace(/^!+/, '');
  const negations = pattern.length - body.length;
  let regex = compiled.get(body);
  if (!regex) {
    regex = new RegExp(`^(?:${globToRegex(body)})$`, 's');
    compiled.set(body, regex);
  }
  return regex.test(text) !== (negations % 2 === 1);
}

const escapeRegex = (c) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** `*` within a segment, `**` across segments (as a whole segment), `?`, `[...]`, `{a,b}`. */
function globToRegex(glob) {
  let out = '';
  let i = 0;
  const n = glob.length;
  while (i < n) {
    const c = glob[i];
    if (c === '*') {
      let j = i;
      while (j < n && glob[j] === '*') j += 1;
      const wholeSegment = (i === 0 || glob[i - 1] === '/') && (j === n || glob[j] === '/');
      if (j - i >= 2 && wholeSegment) {
        if (j < n) {
          out += '(?:.*/)?';
          j += 1;
        } else {
          out += '.*';
        }
      } else {
        out += '[^/]*';
      }
      i = j;
    } else if (c === '?') {
      out += '[^/]';
      i += 1;
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        out += escapeRegex(c);
        i += 1;
        continue;
      }
      let body = glob.slice(i + 1, end);
      const negate = body[0] === '!' || body[0] === '^';
      if (negate) body = body.slice(1);
      out += `(?!/)[${negate ? '^' : ''}${body.replace(/\\/g, '\\\\').replace(/\[/g, '\\[')}]`;
      i = end + 1;
    } else if (c === '{') {
      let depth = 0;
      let j = i;
      let start = i + 1;
      const branches = [];
      while (j < n) {
        if (glob[j] === '{') depth += 1;
        else if (glob[j] === '}') {
          depth -= 1;
          if (depth === 0) {
            branches.push(glob.slice(start, j));
            break;
          }
        } else if (glob[j] === ',' && depth === 1) {
          branches.push(glob.slice(start, j));
          start = j + 1;
        } else if (glob[j] === '\\') j += 1;
        j += 1;
      }
      if (j >= n) {
        out += escapeRegex(c);
        i += 1;
        continue;
      }
      out += `(?:${branches.map(globToRegex).join('|')})`;
      i = j + 1;
    } else if (c === '\\' && i + 1 < n) {
      out += escapeRegex(glob[i + 1]);
      i += 2;
    } else {
      out += escapeRegex(c);
      i += 1;
    }
  }
  return out;
}
