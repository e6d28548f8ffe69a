-- What the objects under each policy cost per month where they are, as the
-- last sweep measured it (compared with the policy's monthly cost ceiling).
ALTER TABLE policies ADD COLUMN measured_objects bigint;
ALTER TABLE policies ADD COLUMN measured_monthly_cost double precision;
ALTER TABLE policies ADD COLUMN measured_at timestamptz;
