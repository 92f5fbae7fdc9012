// The dashboard's only script: the Copy buttons of a key or secret shown
// once. Loaded from this origin (the Content Security Policy allows no
// inline script); every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var id = button.getAttribute("data-copy");
      var field = document.getElementById(id);
      var status = document.querySelector('[data-copy-status="' + id + '"]');
      if (!field) return;
      var done = function (text) { if (status) status.textContent = text; };
      field.focus();
      field.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(
          function () { done("Copied to the clipboard."); },
          function () { done("Press Ctrl+C (or Cmd+C) to copy the selected text."); }
        );
      } else {
        done("Press Ctrl+C (or Cmd+C) to copy the selected text.");
      }
    });
  });
});
