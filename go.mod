module github.com/asterisksupport/doorman

go 1.26.0
