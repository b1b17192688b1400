-- A client's workspace label; see the PostgreSQL migration.
CREATE TABLE client_workspaces (
    client_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL
);
INSERT INTO client_workspaces (client_id, workspace)
    SELECT client_id, MAX(workspace) FROM client_grants GROUP BY client_id;
