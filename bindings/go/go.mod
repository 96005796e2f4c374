module shardpoint.dev/shardpoint/bindings/go

go 1.22
