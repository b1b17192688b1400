-- Where an extracted text came from: 'document' (the document's own text) or 'ocr' (recognised
-- from a PDF's page images, STOWAGE_OCR). NULL while pending, after a failure, and for text
-- extracted before this column existed (which was always the document's own).
ALTER TABLE files ADD COLUMN text_source TEXT;
