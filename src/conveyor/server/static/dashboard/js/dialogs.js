// Modal dialogs (confirmation, API token) and toasts. Dialogs resolve a promise: true/false for a
// confirmation, the token or null for the token prompt.

import { h } from "./dom.js";

function modal(build) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "modal" });
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(build.cancelValue);
    });
    dialog.append(build.render(finish));
    document.body.append(dialog);
    dialog.showModal();
    const focus = dialog.querySelector("[autofocus]");
    if (focus) focus.focus();
  });
}

/** Ask before acting. `danger` colours the confirming button red; `extra` (nodes) goes under the
 * message: controls the caller reads once the promise resolves to true. */
export function confirmAction({ title, message, confirm = "Confirm", danger = false, extra = null }) {
  return modal({
    cancelValue: false,
    render: (finish) =>
      h(
        "form",
        {
          method: "dialog",
          class: "modal-body",
          "data-testid": "confirm-dialog",
          onsubmit: (event) => {
            event.preventDefault();
            finish(true);
          },
        },
        h("h2", {}, title),
        h("p", {}, message),
        extra,
        h(
          "div",
          { class: "modal-actions" },
          h("button", { type: "button", class: "secondary", onclick: () => finish(false) }, "Back"),
          h("button", { type: "submit", class: danger ? "danger" : "primary", autofocus: true, "data-testid": "confirm" }, confirm),
        ),
      ),
  });
}

/** The API token prompt, shown when the server answers 401. Resolves to the token, or null. */
export function askToken(message) {
  return modal({
    cancelValue: null,
    render: (finish) => {
      const input = h("input", {
        type: "password",
        name: "token",
        autocomplete: "off",
        placeholder: "Bearer token",
        autofocus: true,
        required: true,
        "data-testid": "token-input",
      });
      return h(
        "form",
        {
          class: "modal-body",
          "data-testid": "token-dialog",
          onsubmit: (event) => {
            event.preventDefault();
            finish(input.value.trim() || null);
          },
        },
        h("h2", {}, "API token"),
        h("p", {}, message, " It is kept in this browser only (localStorage) and sent as ", h("code", {}, "Authorization: Bearer …"), "."),
        input,
        h(
          "div",
          { class: "modal-actions" },
          h("button", { type: "button", class: "secondary", onclick: () => finish(null) }, "Cancel"),
          h("button", { type: "submit", class: "primary" }, "Use token"),
        ),
      );
    },
  });
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}
