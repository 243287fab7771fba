// The REST API, as the dashboard uses it. A bearer token, when the server needs one, is kept in
// localStorage and sent with every call; a 401 asks for it (once, however many calls failed).

import { askToken } from "./dialogs.js";

export const API = "/api/v1";
const TOKEN_KEY = "conveyor.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

function describe(status, detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${e.msg}`).join("; ");
  }
  if (typeof detail === "string") return detail;
  return `HTTP ${status}`;
}

export function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lasts as long as the page */
  }
}

let pendingPrompt = null;

function promptForToken(message) {
  if (!pendingPrompt) {
    pendingPrompt = askToken(message).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, String(item));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function request(method, path, { params, body, retried = false } = {}) {
  const headers = { Accept: "application/json" };
  const auth = token();
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${API}${path}${query(params)}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 401 && !retried) {
    const given = await promptForToken(auth ? "The server refused this token." : "This server needs an API token.");
    if (given !== null) {
      setToken(given);
      return request(method, path, { params, body, retried: true });
    }
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  return data;
}

export const get = (path, params) => request("GET", path, { params });
export const post = (path, body) => request("POST", path, { body });
export const del = (path) => request("DELETE", path);
