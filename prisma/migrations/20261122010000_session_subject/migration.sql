-- AlterTable
ALTER TABLE "http_sessions" ADD COLUMN IF NOT EXISTS "subject" TEXT;

-- CreateIndex
CREATE INDEX IF NOT EXISTS "http_sessions_subject_idx" ON "http_sessions"("subject");
