-- Issue 14: a webhook attempt keeps at most the receiver's status line, never its body. Earlier versions
-- kept the first 512 bytes of the answer, which made a subscription a way to read an internal service
-- (cloud metadata, an admin page) through the attempts API. Those stored bodies are scrubbed here.
UPDATE webhook_attempts
   SET response = CASE WHEN status IS NULL THEN NULL ELSE 'HTTP ' || status END
 WHERE response IS NOT NULL;
