// Colour theme: the system's by default (app.css follows prefers-color-scheme); a choice made
// with the theme button is kept in this browser. A classic script in <head>, so the stored
// choice applies before the first paint (no flash of the wrong theme).
(function () {
  "use strict";
  var KEY = "chatsite-theme";
  var ORDER = ["system", "light", "dark"];
  var NAMES = { system: "System", light: "Light", dark: "Dark" };
  var ICONS = { system: "◐", light: "☀", dark: "☾" };
  var root = document.documentElement;

  function stored() {
    try {
      var value = localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch (e) {
      return "system"; // storage blocked: follow the system
    }
  }
  function store(choice) {
    try {
      if (choice === "system") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, choice);
    } catch (e) { /* applied to this page only */ }
  }
  function apply(choice) {
    if (choice === "light" || choice === "dark") root.setAttribute("data-theme", choice);
    else root.removeAttribute("data-theme");
  }
  function nextOf(choice) {
    return ORDER[(ORDER.indexOf(choice) + 1) % ORDER.length];
  }

  var current = stored();
  apply(current);

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    function render() {
      button.textContent = ICONS[current];
      button.setAttribute("aria-label", "Theme: " + NAMES[current]);
      button.title = "Theme: " + NAMES[current] + " (click for " + NAMES[nextOf(current)] + ")";
      button.dataset.theme = current;
    }
    render();
    button.hidden = false;
    button.addEventListener("click", function () {
      current = nextOf(current);
      store(current);
      apply(current);
      render();
    });
    window.addEventListener("storage", function (event) {
      if (event.key !== KEY && event.key !== null) return; // another tab changed it
      current = stored();
      apply(current);
      render();
    });
  });
})();
