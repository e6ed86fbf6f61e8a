// iterjob dashboard: the theme the operator picked with the switch (light or
// dark; none: the system's), applied before the first paint. app.js wires the
// switch.
"use strict";
try {
  const theme = window.localStorage.getItem("iterjob-theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
} catch (e) {
  // storage refused (a private window's policy): the system's theme it is
}
