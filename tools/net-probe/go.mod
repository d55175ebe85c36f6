module arca/tools/net-probe

go 1.26.0
