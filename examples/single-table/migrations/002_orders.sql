CREATE TABLE orders (
  order_id text PRIMARY KEY,
  user_id  text NOT NULL,
  status   text NOT NULL,
  total    numeric(12, 2)
);
CREATE INDEX orders_user_id ON orders (user_id);

-- Lines are written in the same transaction as their order (one item -> both tables, in the
-- mapping's table order), so this foreign key holds during the load.
CREATE TABLE order_lines (
  order_id text NOT NULL REFERENCES orders (order_id),
  line_no  integer NOT NULL,
  sku      text NOT NULL,
  qty      integer NOT NULL CHECK (qty > 0),
  price    numeric(12, 2),
  PRIMARY KEY (order_id, line_no)
);
