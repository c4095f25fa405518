-- What became of each dead letter. The letters themselves stay in `shop.dead-letters` (Kafka
-- keeps them for its retention); this table says which of them an operator redrove or
-- discarded, so the console lists the ones still waiting. A letter is named by its place in
-- the dead-letter topic.
CREATE TABLE dead_letter_resolutions (
    letter_partition integer     NOT NULL,
    letter_offset    bigint      NOT NULL,
    -- `redriven` or `discarded`.
    resolution       text        NOT NULL CHECK (resolution IN ('redriven', 'discarded')),
    actor            text        NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    -- Where a redriven letter's record went, `topic/partition/offset` as the broker acknowledged
    -- it (the row is written only after that); null for a discard.
    redriven_to      text,
    PRIMARY KEY (letter_partition, letter_offset)
);
