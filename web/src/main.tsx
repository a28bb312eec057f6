/**
 * The browser app's entry: one session per browser (shared by tabs, its refresh token in an HttpOnly cookie), the
 * UI rendered into #app.
 */

import { render } from "preact";

import { Api } from "./natter/api";
import { Session } from "./natter/session";
import { App } from "./ui/App";
import { BrowserSessionStore } from "./ui/browser";
import "./styles.css";

const api = new Api("", undefined, { refreshCookie: true });
const session = new Session(api, new BrowserSessionStore());
const root = document.getElementById("app");
if (root) render(<App api={api} session={session} />, root);
