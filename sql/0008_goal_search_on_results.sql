-- The memory agents' full-text search (lua/agents/memory.lua) looks only
-- at completed nodes that hold a result, so only those are indexed: a
-- pending node's insert and its status changes no longer compute
-- to_tsvector and add GIN entries for rows no search can return. Every
-- row version a GIN index covers costs an entry, and a node is written
-- two or three times on its way to completed.
DROP INDEX IF EXISTS idx_thought_trees_goal_fts;
CREATE INDEX idx_thought_trees_goal_fts ON thought_trees USING gin (to_tsvector('english', goal))
    WHERE status = 'completed' AND metadata ? 'result';
