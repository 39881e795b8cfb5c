// Reading a plugin's config, shared by the JavaScript reference plugins.
//
// The host hands a plugin its `config` table from gaffer.toml as JSON text ("{}" when absent).

/**
 * The fields the config sets: {} for empty text or `null`; an error for anything but a JSON
 * object, which the host reports as the plugin's fault.
 */
export function givenFields(text) {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed === 'null') return {};
  let given;
  try {
    given = JSON.parse(trimmed);
  } catch (e) {
    throw new Error(`invalid config: ${e.message}`);
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new Error(`invalid config: expected a JSON object, got \`${trimmed.slice(0, 40)}\``);
  }
  return given;
}
