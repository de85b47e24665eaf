// Creating the first owner with the one-time link `emberline up` printed: user name and a
// password typed twice. The server's refusals appear next to the field they are about.

import { ConnectError } from "@connectrpc/connect";
import { auth } from "../api";
import { h } from "../dom";
import type { WhoAmIResponse } from "../gen/emberline/v1/emberline_pb";
import { setupErrorField } from "../routes";
import { field, fieldError, refusal, showError } from "./signin";

export function renderSetup(root: HTMLElement, code: string | undefined, signedIn: (caller: WhoAmIResponse | undefined) => void): void {
  const title = h("h2", { id: "setup-title" }, "Create the owner account");
  if (code === undefined) {
    root.replaceChildren(
      h(
        "section",
        { class: "auth" },
        title,
        h("p", { class: "field-error", role: "alert" }, "This setup link is incomplete: copy the whole link (it ends in 16 letters and digits) from the log of `emberline up`."),
      ),
    );
    return;
  }
  const user = h("input", { type: "text", name: "user", required: true, autocomplete: "username", autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { type: "password", name: "password", required: true, autocomplete: "new-password" });
  const confirm = h("input", { type: "password", name: "confirm", required: true, autocomplete: "new-password" });
  const errors = {
    form: fieldError("setup-error"),
    user: fieldError("setup-user-error"),
    password: fieldError("setup-password-error"),
    confirm: fieldError("setup-confirm-error"),
  };
  const submit = h("button", { type: "submit" }, "Create account");
  const form = h(
    "form",
    { class: "auth-form", "aria-labelledby": "setup-title" },
    errors.form,
    field("User name", user, errors.user),
    field("Password", password, errors.password),
    field("Password again", confirm, errors.confirm),
    submit,
  );
  const clear = () => {
    showError(errors.form, "");
    showError(errors.user, "", user);
    showError(errors.password, "", password);
    showError(errors.confirm, "", confirm);
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clear();
    if (password.value !== confirm.value) {
      showError(errors.confirm, "The two passwords differ.", confirm);
      confirm.select();
      return;
    }
    submit.disabled = true;
    auth
      .setup({ code, user: user.value.trim(), password: password.value, cookie: true })
      .then((r) => signedIn(r.caller))
      .catch((err: unknown) => {
        const e = ConnectError.from(err);
        const where = setupErrorField(e.code, e.rawMessage);
        if (where === "user") showError(errors.user, refusal(e), user);
        else if (where === "password") showError(errors.password, refusal(e), password);
        else showError(errors.form, refusal(e));
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  root.replaceChildren(
    h(
      "section",
      { class: "auth" },
      title,
      h("p", { class: "facts" }, "This one-time link creates the first account, the owner of this Emberline."),
      form,
    ),
  );
  user.focus();
}
