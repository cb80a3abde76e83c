ALTER TABLE markets_state ADD COLUMN maker_fee BIGINT;
ALTER TABLE markets_state ADD COLUMN taker_fee BIGINT;
