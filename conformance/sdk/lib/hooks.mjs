// Module-resolution hook (registered by run.mjs before it loads the SDK): resolves the bare
// specifier `sqlite3` to ./sqlite3-stub.mjs. Everything else resolves as usual.
const STUB = new URL("./sqlite3-stub.mjs", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === "sqlite3") {
    return { url: STUB, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
