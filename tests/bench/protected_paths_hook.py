#!/usr/bin/python3
"""The protected-paths rule as a command hook, the way coding agents run hooks today: one new
process per event, the event as JSON on stdin, the decision as JSON on stdout. The benchmark
compares it with the same rule run as a WebAssembly hook inside gaffer."""
import fnmatch
import json
import sys

GLOBS = [".env", ".env.*", "**/migrations/**", ".git/**"]
WRITE_TOOLS = {"write_file", "edit", "delete_file"}


def protected(path):
    for glob in GLOBS:
        if "/" not in glob:
            if fnmatch.fnmatch(path.rsplit("/", 1)[-1], glob):
                return glob
        elif fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path, glob.replace("**/", "")):
            return glob
    return None


def main():
    event = json.load(sys.stdin)
    if event.get("name") not in WRITE_TOOLS:
        print(json.dumps({"decision": "allow"}))
        return
    path = json.loads(event.get("arguments", "{}")).get("path", "")
    glob = protected(path)
    if glob:
        print(json.dumps({"decision": "deny", "reason": f"`{path}` is protected (matches `{glob}`)"}))
    else:
        print(json.dumps({"decision": "allow"}))


main()
