"""protected-paths, in Python: the same hook as plugins/protected-paths (Rust), decision for decision.

- pre-tool: a call to one of ``write_tools`` is denied when a path argument (``path``,
  ``file_path``, ``paths``, ``old_path``, ``new_path``, ``from``, ``to``) matches a protected
  glob. A write call whose arguments are not a JSON object, or that names no path, is denied
  too: the hook fails closed. Other tools are allowed (a write by a shell command is caught by
  on-diff).
- on-edit: an edit of a protected path is denied.
- on-diff: one finding per changed file whose path (or path before a rename) is protected.

Paths are normalised lexically (``a/./b``, ``a/../b``, a leading ``/``) before matching. A glob
without ``/`` matches a name anywhere; a glob that matches a directory covers what is below it.

Config (every field optional): ``globs`` ([".env", ".env.*", "**/migrations/**", ".git/**"]),
``write_tools`` (["write_file", "edit", "delete_file"]).

Build: componentize-py -d wit/0.1.0 -w hook componentize protected_paths -p plugins/python -o protected_paths.wasm
"""

import json
import re

import wit_world
from componentize_py_types import Err
from plugin_config import given_fields
from wit_world.imports import host, types

DEFAULTS = {
    "globs": [".env", ".env.*", "**/migrations/**", ".git/**"],
    "write_tools": ["write_file", "edit", "delete_file"],
}

# Argument keys that carry a path, in the order they are checked.
PATH_KEYS = ["path", "file_path", "paths", "old_path", "new_path", "from", "to"]


class WitWorld(wit_world.WitWorld):
    def pre_tool(self, task: types.Task, call: types.ToolCall) -> types.HookDecision:
        return pre_tool_with(parse_config(host.config()), call)

    def on_edit(self, task: types.Task, edit: types.FileEdit) -> types.RuleDecision:
        return on_edit_with(parse_config(host.config()), edit)

    def on_diff(self, task: types.Task, diff: types.Diff) -> types.RuleDecision:
        return on_diff_with(parse_config(host.config()), diff)


def parse_config(text: str) -> dict:
    """The config with defaults filled in; an unknown key or a bad value is an error."""
    config = dict(DEFAULTS)
    for key, value in given_fields(text).items():
        if key not in DEFAULTS:
            raise Err(f"invalid config: unknown field `{key}`, expected `globs` or `write_tools`")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Err(f"invalid config: `{key}`: expected a list of strings")
        config[key] = value
    return config


def pre_tool_with(config: dict, call: types.ToolCall) -> types.HookDecision:
    tool = call.name
    if tool not in config["write_tools"]:
        return types.HookDecision_Allow()
    try:
        arguments = json.loads(call.arguments)
    except ValueError as e:
        return types.HookDecision_Deny(
            f"the arguments of `{tool}` are not valid JSON ({e}), so its path cannot be "
            "checked against the protected paths; call it again with a JSON object"
        )
    if not isinstance(arguments, dict):
        return types.HookDecision_Deny(
            f"the arguments of `{tool}` are not a JSON object, so its path cannot be checked "
            "against the protected paths; call it again with a JSON object"
        )
    paths = []
    for key in PATH_KEYS:
        value = arguments.get(key)
        if isinstance(value, str):
            paths.append(value)
        elif isinstance(value, list):
            paths.extend(item for item in value if isinstance(item, str))
    if not paths:
        return types.HookDecision_Deny(
            f"`{tool}` was called without a `path` argument, so it cannot be checked against "
            "the protected paths; call it again with `path`"
        )
    for path in paths:
        reason = protected(config, path)
        if reason is not None:
            return types.HookDecision_Deny(reason)
    return types.HookDecision_Allow()


def on_edit_with(config: dict, edit: types.FileEdit) -> types.RuleDecision:
    message = protected(config, edit.path)
    if message is None:
        return types.RuleDecision_Allow()
    return types.RuleDecision_Deny([types.Finding(message=message, path=edit.path, line=None)])


def on_diff_with(config: dict, diff: types.Diff) -> types.RuleDecision:
    findings = []
    for file in diff.files:
        message = protected(config, file.path)
        if message is None and file.old_path is not None:
            old = protected(config, file.old_path)
            if old is not None:
                message = f"{old} (renamed to `{file.path}`)"
        if message is not None:
            findings.append(types.Finding(message=message, path=file.path, line=None))
    if not findings:
        return types.RuleDecision_Allow()
    return types.RuleDecision_Deny(findings)


def protected(config: dict, path: str):
    """The reason `path` is protected, if it is."""
    normalized = normalize(path)
    for pattern in config["globs"]:
        if matches(pattern, normalized):
            return (
                f"`{normalized}` is protected (matches `{pattern}`); "
                "change it by hand or ask a person"
            )
    return None


def normalize(path: str) -> str:
    """Resolve `.`, `..` and empty segments lexically; no leading `/`."""
    segments = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    return "/".join(segments)


def strip_leading(path: str) -> str:
    while True:
        if path.startswith("./"):
            path = path[2:]
        elif path.startswith("/"):
            path = path[1:]
        else:
            return path


def matches(pattern: str, path: str) -> bool:
    """Whether a gitignore-like glob matches a path (the rules of gaffer_sdk::glob)."""
    path = strip_leading(path.rstrip("/"))
    if not path:
        return False
    pat = pattern.strip()
    dir_only = False
    if len(pat) > 1 and pat.endswith("/"):
        pat = pat.rstrip("/")
        dir_only = True
    anchored = False
    while True:
        if pat.startswith("./"):
            pat, anchored = pat[2:], True
        elif pat.startswith("/"):
            pat, anchored = pat[1:], True
        else:
            break
    if not pat:
        return False
    if not anchored and "/" not in pat:
        # A bare name matches any segment; with a trailing `/`, only a directory's.
        segments = path.split("/")
        return any(
            glob_match(pat, segment)
            for i, segment in enumerate(segments)
            if not dir_only or i < len(segments) - 1
        )
    if not dir_only and glob_match(pat, path):
        return True
    # A pattern that matches a directory covers everything below it.
    return any(glob_match(pat, path[:i]) for i, c in enumerate(path) if c == "/")


_compiled: dict = {}


def glob_match(pattern: str, text: str) -> bool:
    negations = len(pattern) - len(pattern.lstrip("!"))
    body = pattern[negations:]
    regex = _compiled.get(body)
    if regex is None:
        regex = _compiled[body] = re.compile(glob_to_regex(body), re.DOTALL)
    matched = regex.fullmatch(text) is not None
    return matched != (negations % 2 == 1)


def glob_to_regex(glob: str) -> str:
    """`*` within a segment, `**` across segments (as a whole segment), `?`, `[...]`, `{a,b}`."""
    out = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            whole_segment = (i == 0 or glob[i - 1] == "/") and (j == n or glob[j] == "/")
            if j - i >= 2 and whole_segment:
                if j < n:
                    out.append("(?:.*/)?")
                    j += 1
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1 : end]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            escaped = body.replace("\\", "\\\\").replace("[", "\\[")
            out.append(f"(?!/)[{'^' if negate else ''}{escaped}]")
            i = end + 1
        elif c == "{":
            depth, j, start, branches = 0, i, i + 1, []
            while j < n:
                if glob[j] == "{":
                    depth += 1
                elif glob[j] == "}":
                    depth -= 1
                    if depth == 0:
                        branches.append(glob[start:j])
                        break
                elif glob[j] == "," and depth == 1:
                    branches.append(glob[start:j])
                    start = j + 1
                elif glob[j] == "\\":
                    j += 1
                j += 1
            if j >= n:
                out.append(re.escape(c))
                i += 1
                continue
            out.append("(?:" + "|".join(glob_to_regex(b) for b in branches) + ")")
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)
