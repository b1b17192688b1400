-- Where an extracted text came from; see the PostgreSQL migration.
ALTER TABLE files ADD COLUMN text_source TEXT;
