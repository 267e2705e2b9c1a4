module github.com/matchlock/matchlock/sdk/go/matchlock

go 1.19
