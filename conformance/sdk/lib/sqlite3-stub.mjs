// Stands in for the `sqlite3` package, whose native addon is built by an install script that
// the conformance install skips (package installs run with ignore-scripts). @cursor/sdk loads
// sqlite3 eagerly for its default local store (SqliteLocalAgentStore) and subclasses
// `Database` at load time; the driver always passes the SDK's JSONL store instead, so nothing
// here is ever called. If the SDK did open a SQLite database, this throws loudly.
class Database {
  constructor() {
    throw new Error(
      "sqlite3 is stubbed by the conformance driver: the SDK tried to open a SQLite store " +
        "although a JsonlLocalAgentStore was passed",
    );
  }
}
const sqlite3 = {
  Database,
  Statement: class Statement {},
  OPEN_READONLY: 0x1,
  OPEN_READWRITE: 0x2,
  OPEN_CREATE: 0x4,
  verbose() {
    return sqlite3;
  },
};
export default sqlite3;
export { Database };
