-- depends: 0001.flags-table
ALTER TABLE flags ADD COLUMN IF NOT EXISTS description TEXT;
ALTER TABLE flags ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ;
UPDATE flags SET created_at = now() WHERE created_at IS NULL;
UPDATE flags SET updated_at = created_at WHERE updated_at IS NULL;
ALTER TABLE flags ALTER COLUMN created_at SET DEFAULT now();
ALTER TABLE flags ALTER COLUMN created_at SET NOT NULL;
ALTER TABLE flags ALTER COLUMN updated_at SET DEFAULT now();
ALTER TABLE flags ALTER COLUMN updated_at SET NOT NULL;
