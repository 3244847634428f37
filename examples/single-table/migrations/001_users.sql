CREATE TABLE users (
  user_id    text PRIMARY KEY,
  email      text NOT NULL,
  name       text,
  age        integer CHECK (age >= 0),
  score      numeric(12, 2),
  active     boolean,
  lang       text,
  created_at timestamptz,
  tags       text[],
  avatar     bytea,
  doc        jsonb
);
