"""A gaffer hook: keep the agent's hands off protected paths (secrets, keys, `.git`), and turn
a force push into a safer `--force-with-lease`.

- pre-tool: a `write_file` or `edit` of a protected path is denied; a `run_command` with
  `git push --force` (or `-f`) is rewritten to `--force-with-lease`; the rest is allowed.
- on-edit: an edit of a protected path is denied, with a finding.
- on-diff: one finding per changed file whose path (or path before a rename) is protected;
  a change with none is allowed.

A pattern without `/` matches a file or directory name anywhere (`.env` matches
`config/.env`); a pattern with `/` matches from the repository root (`secrets/` matches
everything under `secrets`). `*` stands for any characters within one name.

Config (the `config` table of the `[[plugins.hooks]]` entry in gaffer.toml):

| field | default | meaning |
|---|---|---|
| `protected` | `[".env", ".env.*", "*.pem", ".git/"]` | path patterns the agent may not write |
"""

import json
from typing import Optional

import wit_world
from wit_world.imports import host, types
from componentize_py_types import Err

# Protected patterns when the config gives none.
DEFAULT_PROTECTED = [".env", ".env.*", "*.pem", ".git/"]

# Tools that write a file named by their `path` argument.
WRITE_TOOLS = ["write_file", "edit"]


class WitWorld(wit_world.WitWorld):
    def pre_tool(self, task: types.Task, call: types.ToolCall) -> types.HookDecision:
        protected = protected_from_config(host.config())
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            arguments = None
        if call.name == "run_command":
            rewritten = safer_push(arguments)
            if rewritten is not None:
                return types.HookDecision_Rewrite(rewritten)
            return types.HookDecision_Allow()
        if call.name not in WRITE_TOOLS:
            return types.HookDecision_Allow()
        # Fail closed: a write whose path cannot be read is denied.
        path = arguments.get("path") if isinstance(arguments, dict) else None
        if not isinstance(path, str):
            return types.HookDecision_Deny(
                f"`{call.name}` needs a JSON object with a `path` argument; call it again with one"
            )
        reason = why_protected(protected, path)
        if reason is not None:
            return types.HookDecision_Deny(reason)
        return types.HookDecision_Allow()

    def on_edit(self, task: types.Task, edit: types.FileEdit) -> types.RuleDecision:
        protected = protected_from_config(host.config())
        message = why_protected(protected, edit.path)
        if message is None:
            return types.RuleDecision_Allow()
        return types.RuleDecision_Deny(
            [types.Finding(message=message, path=edit.path, line=None)]
        )

    def on_diff(self, task: types.Task, diff: types.Diff) -> types.RuleDecision:
        protected = protected_from_config(host.config())
        findings = []
        for file in diff.files:
            message = why_protected(protected, file.path)
            if message is None and file.old_path is not None:
                message = why_protected(protected, file.old_path)
            if message is not None:
                findings.append(types.Finding(message=message, path=file.path, line=None))
        if not findings:
            return types.RuleDecision_Allow()
        return types.RuleDecision_Deny(findings)


def safer_push(arguments) -> Optional[str]:
    """The arguments of a `run_command` with `git push --force` (or `-f`) made safer, if it
    is one."""
    if not isinstance(arguments, dict) or not isinstance(arguments.get("command"), str):
        return None
    words = arguments["command"].split()
    pushes = any(words[i : i + 2] == ["git", "push"] for i in range(len(words)))
    if not pushes or not any(w in ("--force", "-f") for w in words):
        return None
    safer = ["--force-with-lease" if w in ("--force", "-f") else w for w in words]
    return json.dumps({**arguments, "command": " ".join(safer)}, separators=(",", ":"))


def why_protected(protected: list[str], path: str) -> Optional[str]:
    """Why `path` may not be written, if it may not."""
    names = normalize(path)
    for pattern in protected:
        if matches(pattern, names):
            return (
                f"`{'/'.join(names)}` is protected (matches `{pattern}`): "
                "change it by hand, not through the agent"
            )
    return None


def normalize(path: str) -> list[str]:
    """The names of a relative path, with `.`, `..` and empty names resolved."""
    names = []
    for name in path.replace("\\", "/").split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if names:
                names.pop()
        else:
            names.append(name)
    return names


def matches(pattern: str, names: list[str]) -> bool:
    """Whether a pattern matches a path given by its names."""
    if "/" not in pattern:
        return any(wildcard(pattern, name) for name in names)
    parts = [p for p in pattern.split("/") if p]
    return (
        len(parts) > 0
        and len(parts) <= len(names)
        and all(wildcard(p, name) for p, name in zip(parts, names))
    )


def wildcard(pattern: str, name: str) -> bool:
    """Whether `name` matches `pattern`, where `*` stands for any run of characters."""
    pi, si = 0, 0
    # Where the last `*` was, and where in `name` its match ends so far.
    star = None
    while si < len(name):
        if pi < len(pattern) and pattern[pi] == "*":
            star = (pi, si)
            pi += 1
        elif pi < len(pattern) and pattern[pi] == name[si]:
            pi += 1
            si += 1
        elif star is not None:
            pi = star[0] + 1
            si = star[1] + 1
            star = (star[0], star[1] + 1)
        else:
            return False
    return all(c == "*" for c in pattern[pi:])


def protected_from_config(text: str) -> list[str]:
    """`protected` from the config JSON (an object, `{}` when gaffer.toml gives none)."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise Err(f"invalid config: {e}")
    if not isinstance(config, dict):
        raise Err("invalid config: not a JSON object")
    value = config.get("protected", DEFAULT_PROTECTED)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Err(f"invalid config: `protected` must be a list of strings, not {value!r}")
    return value
