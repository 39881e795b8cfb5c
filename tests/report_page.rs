//! The HTML report (`gaffer report --format html`) as a person sees it, in headless Chromium.
