module github.com/matchlock/matchlock/examples/go

go 1.19

require github.com/matchlock/matchlock/sdk/go/matchlock v0.0.0

replace github.com/matchlock/matchlock/sdk/go/matchlock => ../../sdk/go/matchlock
