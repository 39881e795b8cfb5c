//! Third-party files the pages embed, compiled into the binary so that a report is one file that
//! works offline and `gaffer serve` needs nothing beside itself. See
//! `host/assets/vendor/echarts/VENDORED.md` for where each comes from.

/// Apache ECharts 6.1.0, the `common` build (line, bar, pie, scatter; axes, legends, tooltips,
/// mark lines, data zoom; canvas and SVG renderers), minified, as published on npm.
pub const ECHARTS_JS: &str = include_str!("../../assets/vendor/echarts/echarts.common.min.js");

/// The version of [`ECHARTS_JS`].
pub const ECHARTS_VERSION: &str = "6.1.0";

/// ECharts' licence and notice, which travel with it (Apache-2.0, section 4).
pub const ECHARTS_NOTICE: &str = include_str!("../../assets/vendor/echarts/NOTICE");

/// `<script>` with ECharts inline, its licence notice kept at the top.
pub fn echarts_script() -> String {
    // `</script` cannot occur in the minified library (the test below checks), so it embeds as is.
    format!(
        "<script>/*! Apache ECharts {ECHARTS_VERSION} — Apache-2.0. {} */\n{ECHARTS_JS}\n</script>",
        ECHARTS_NOTICE.trim().replace("*/", "* /")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_vendored_echarts_is_the_published_file() {
        assert_eq!(
            hex::encode(Sha256::digest(ECHARTS_JS.as_bytes())),
            "61f13280aba3161f77fc801bf5f9c786f55f10432153a0683fc5cc0700b013d5",
            "host/assets/vendor/echarts/echarts.common.min.js differs from echarts 6.1.0's"
        );
    }

    #[test]
    fn echarts_embeds_in_a_script_element_as_it_is() {
        assert!(!ECHARTS_JS.to_ascii_lowercase().contains("</script"));
        assert!(echarts_script().starts_with("<script>/*! Apache ECharts 6.1.0"));
    }
}
