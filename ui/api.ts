/**
 * Writes to the UI's JSON API. fetch sends the session cookie and the page's own Origin by itself;
 * the JSON content type is what the server requires of every write (a cross-site form cannot send it).
 */
export async function postJson<T>(path: string, body: object): Promise<T> {
  const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const data: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const message = typeof data === "object" && data !== null && "error" in data && typeof data.error === "string" ? data.error : `the guardian answered ${response.status}`;
    throw new Error(message);
  }
  return data as T;
}

/** Whether this browser's session is still known to the guardian (it forgets sessions when it restarts). */
export async function signedIn(): Promise<boolean> {
  const response = await fetch("/api/pending");
  return response.status !== 401;
}
