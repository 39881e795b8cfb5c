// A gaffer verifier: reject an attempt whose tests failed (with a finding), hand a change to
// sensitive paths to a person, approve the rest.
//
// Config (the `config` table of `[plugins.verifier]` in gaffer.toml):
//
// | field | default | meaning |
// |---|---|---|
// | `needs_human_paths` | `["db/migrations/", ".github/workflows/"]` | a change to a path starting with one of these goes to a person |
//
// Values as jco's QuickJS backend gives them: record fields in camelCase, u64 as plain
// numbers, variants as `{ tag: 'reject', val: [...] }`; an `option` that is none arrives as
// null (test with `!= null`) and is returned as undefined (or left out).

import { config, log } from 'gaffer:plugin/host@0.1.0';

// Path prefixes that need a person when the config gives none.
const DEFAULT_NEEDS_HUMAN_PATHS = ['db/migrations/', '.github/workflows/'];

export function verify(request) {
  const needsHumanPaths = needsHumanPathsFromConfig(config());
  const verdict = judge(needsHumanPaths, request);
  log('info', 'verified', [['verdict', verdict.tag]]);
  return verdict;
}

function judge(needsHumanPaths, request) {
  const tests = request.tests;
  if (!tests.ran) {
    return {
      tag: 'needs-human',
      val: `the test command \`${tests.command}\` did not run, so nothing checked the change`,
    };
  }
  if (!tests.passed) {
    const status =
      tests.exitCode != null && tests.exitCode !== 0 ? ` (exit code ${tests.exitCode})` : '';
    return {
      tag: 'reject',
      val: [{ message: `the tests failed: \`${tests.command}\`${status}; make them pass` }],
    };
  }
  if (request.diff.files.length === 0) {
    return { tag: 'reject', val: [{ message: 'the attempt changed nothing' }] };
  }
  for (const file of request.diff.files) {
    const prefix = needsHumanPaths.find((p) => file.path.startsWith(p));
    if (prefix !== undefined) {
      return {
        tag: 'needs-human',
        val: `\`${file.path}\` is under \`${prefix}\`: a person reviews changes there`,
      };
    }
  }
  return { tag: 'approve' };
}

// `needs_human_paths` from the config JSON (an object, `{}` when gaffer.toml gives none).
function needsHumanPathsFromConfig(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`invalid config: ${e.message}`);
  }
  const value = parsed?.needs_human_paths ?? DEFAULT_NEEDS_HUMAN_PATHS;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new Error(
      'invalid config: `needs_human_paths` must be a list of strings, ' +
        `not ${JSON.stringify(value)}`,
    );
  }
  return value;
}
