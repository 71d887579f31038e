-- Every trained version of the suggestions ranker, with how it did on its holdout. The
-- promoted one with the latest trained_at ranks new suggestions; the others stay for audit.
CREATE TABLE models (
    version              text PRIMARY KEY,
    -- Logistic regression over `suggestions::ranker::encode`: an intercept and one weight per feature.
    intercept            float8 NOT NULL,
    weights              float8[] NOT NULL,
    trained_on           integer NOT NULL,
    holdout_size         integer NOT NULL,
    log_loss             float8 NOT NULL,
    auc                  float8 NOT NULL,
    -- What the model it had to beat scored on the same holdout.
    baseline_version     text NOT NULL,
    baseline_log_loss    float8 NOT NULL,
    promoted             boolean NOT NULL,
    trained_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX models_promoted ON models (trained_at DESC) WHERE promoted;

ALTER TABLE models ENABLE ROW LEVEL SECURITY;
