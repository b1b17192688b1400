-- A client's workspace label, kept apart from its grants so that removing every key's grant
-- and adding the client again (without naming a workspace) keeps the label it had.
CREATE TABLE client_workspaces (
    client_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL
);
INSERT INTO client_workspaces (client_id, workspace)
    SELECT client_id, MAX(workspace) FROM client_grants GROUP BY client_id;
