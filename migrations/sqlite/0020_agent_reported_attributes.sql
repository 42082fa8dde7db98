-- Agent-reported attributes (issue 17, point 9). Keep in step with
-- ../postgres/0020_agent_reported_attributes.sql.
--
-- An agent's os, arch, ip_address, version and labels columns now hold what
-- an admin set or accepted: agent groups match only those. What the agent
-- says about itself in heartbeats goes to `reported` (JSON), shown next to
-- them and never matched, and `observed_address` is the address the last
-- heartbeat came from as the server saw the connection. Values already in
-- the columns stay (they were accepted implicitly before this change).
ALTER TABLE agents ADD COLUMN reported TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN observed_address TEXT;
