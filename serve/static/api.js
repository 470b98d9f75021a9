// Requests to the sidecar that served this page, as a keyboard makes them: the API token
// (typed once, kept in sessionStorage: this tab only, gone when it closes) and JSON bodies with
// `Content-Type: application/json` on every state-changing request (the sidecar answers 415
// otherwise). Every failure becomes an ApiError with the sidecar's code and message, and a
// sentence a person can act on.

const TOKEN_KEY = "swipefl-api-token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** What to tell the person. */
  explain() {
    switch (this.code) {
      case "UNAUTHORIZED":
        return "The sidecar refused the API token (401). Enter the token from the sidecar's api-token file.";
      case "HOST_NOT_ALLOWED":
        return "The sidecar does not answer this address (421). Open the page at http://127.0.0.1:<port>/demo.";
      case "UNSUPPORTED_MEDIA_TYPE":
        return `The sidecar refused the request's content type (415): ${this.message}`;
      case "MODEL_NOT_LOADED":
        return "The sidecar has no model loaded yet (503). Wait for a release, or check its log.";
      case "NETWORK":
        return "The sidecar cannot be reached. Is it still running?";
      default:
        return `${this.code} (${this.status}): ${this.message}`;
    }
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** `method path` with an optional JSON body; resolves to the answer's JSON, or throws ApiError. */
export async function call(method, path, body, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (method !== "GET") headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError(0, "NETWORK", String(err));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = (data && data.code) || `HTTP_${response.status}`;
    const message = (data && data.message) || response.statusText;
    throw new ApiError(response.status, code, message);
  }
  return data;
}

export const api = {
  // previous: the text typed so far; its last word ranks the candidates too (word pairs).
  predict: (points, keyboard, k = 4, previous = "") =>
    call("POST", "/api/v1/predict", { points, keyboard, k, previous: previous.slice(-64) }),
  commit: (swipe, key) => call("POST", "/api/v1/swipes", swipe, { "Idempotency-Key": key }),
  stats: () => call("GET", "/api/v1/stats"),
  words: () => call("GET", "/api/v1/lexicon/words"),
  addWords: (words) => call("POST", "/api/v1/lexicon/words", { words }),
  train: () => call("POST", "/api/v1/train", {}),
  job: (id) => call("GET", `/api/v1/train/${encodeURIComponent(id)}`),
};
