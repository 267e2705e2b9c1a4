module github.com/matchlock/matchlock/sdk/go

go 1.19
