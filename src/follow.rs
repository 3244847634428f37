//! Following a table's DynamoDB Stream after the load.
