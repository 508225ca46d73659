-- CreateTable
CREATE TABLE IF NOT EXISTS "http_sessions" (
    "id" BIGSERIAL NOT NULL,
    "key" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "created_on" TIMESTAMPTZ(3) NOT NULL,
    "modified_on" TIMESTAMPTZ(3) NOT NULL,
    "expires_on" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "http_sessions_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX IF NOT EXISTS "http_sessions_key_key" ON "http_sessions"("key");

-- CreateIndex
CREATE INDEX IF NOT EXISTS "http_sessions_expires_on_idx" ON "http_sessions"("expires_on");
