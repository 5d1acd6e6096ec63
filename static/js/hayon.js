// Hayon's only script. It is a static file because the Content-Security-Policy allows no inline
// script, style attribute or event handler (hayon/settings/base.py); the pages work without it.
"use strict";

// A new API token's field selects its whole value when focused, ready to copy.
document.addEventListener("focusin", (event) => {
  if (event.target.matches("[data-select-on-focus]")) event.target.select();
});

// A platform card's accent colour comes from its provider as data-accent; setting a custom
// property from script is allowed where a style="" attribute is not.
for (const element of document.querySelectorAll("[data-accent]")) {
  element.style.setProperty("--accent", element.dataset.accent);
}
