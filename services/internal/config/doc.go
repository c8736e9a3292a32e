// Package config fills each binary's typed configuration struct from
// environment variables.
//
// A misconfigured deployment should fail once, at start-up, with every
// problem listed, instead of one problem per restart. So a Loader never stops
// at the first bad variable: each method records what is wrong and returns a
// usable zero or default value, and Err reports everything at the end:
//
//	l := config.NewLoader(os.LookupEnv)
//	cfg := Config{
//		DatabaseURL:   l.RequiredSecret("DATABASE_URL", 1),
//		GRPCAddr:      l.HostPort("TM_GRPC_ADDR", "127.0.0.1:9101"),
//		ServiceSecret: l.RequiredSecret("TM_SERVICE_SECRET", 32),
//		LogLevel:      config.Parse(l, "TM_LOG_LEVEL", slog.LevelInfo, logging.ParseLevel),
//	}
//	if err := l.Err(); err != nil {
//		return err
//	}
//
// Secrets are held as Secret, which prints as [REDACTED] through fmt,
// encoding/json, encoding.TextMarshaler and log/slog, so a whole config
// struct can be logged at start-up. The value is reachable only through
// Secret.Reveal, which makes every use of it easy to find.
package config
