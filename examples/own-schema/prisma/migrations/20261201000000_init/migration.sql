-- CreateTable
CREATE TABLE "User" (
    "id" SERIAL NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "user_sessions" (
    "id" BIGSERIAL NOT NULL,
    "key" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "created_on" TIMESTAMPTZ(3) NOT NULL,
    "modified_on" TIMESTAMPTZ(3) NOT NULL,
    "expires_on" TIMESTAMPTZ(3) NOT NULL,
    "subject" TEXT,

    CONSTRAINT "user_sessions_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");

-- CreateIndex
CREATE UNIQUE INDEX "user_sessions_key_key" ON "user_sessions"("key");

-- CreateIndex
CREATE INDEX "user_sessions_expires_on_idx" ON "user_sessions"("expires_on");

-- CreateIndex
CREATE INDEX "user_sessions_subject_idx" ON "user_sessions"("subject");
