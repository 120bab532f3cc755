using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace DynamicWorkers.LeaseSaga.Persistence.Migrations.SqlServer
{
    /// <summary>
    /// Durations become ticks (bigint): SQL Server's time holds less than a day. SQL Server converts no time to bigint in
    /// place, so each column is copied into a new one, converted, and the new one takes the old one's name.
    /// </summary>
    public partial class DurationsAsTicks : Migration
    {
        static readonly (string Table, string Column, bool Nullable)[] Durations =
        [
            ("leases", "AllocationTimeout", false),
            ("instance_lifecycles", "IdleTimeout", true),
            ("instance_lifecycles", "MaxWorkerAge", true),
            ("instance_lifecycles", "MaxLeaseDuration", true),
        ];

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            foreach (var (table, column, nullable) in Durations)
            {
                // A time is less than a day: its nanoseconds fit a bigint.
                Replace(migrationBuilder, table, column, nullable, "bigint",
                    $"DATEDIFF_BIG(NANOSECOND, CAST('00:00:00' AS time), [{column}]) / 100");
            }
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            foreach (var (table, column, nullable) in Durations)
            {
                // A duration of a day or more has no time: it becomes the longest time there is.
                Replace(migrationBuilder, table, column, nullable, "time",
                    $"CASE WHEN [{column}] >= 864000000000 THEN CAST('23:59:59.9999999' AS time) "
                    + $"ELSE DATEADD(SECOND, CAST([{column}] / 10000000 AS int), CAST('00:00:00' AS time)) END");
            }
        }

        static void Replace(MigrationBuilder migrationBuilder, string table, string column, bool nullable, string type,
            string converted)
        {
            var copy = column + "Converted";
            migrationBuilder.Sql($"ALTER TABLE [{table}] ADD [{copy}] {type} NULL;");
            // EXEC: in a script (one batch) a column added or renamed earlier in the batch is only seen by a later one.
            migrationBuilder.Sql(Exec($"UPDATE [{table}] SET [{copy}] = {converted};"));
            migrationBuilder.DropColumn(name: column, table: table);
            migrationBuilder.RenameColumn(name: copy, table: table, newName: column);
            if (!nullable)
            {
                migrationBuilder.Sql(Exec($"ALTER TABLE [{table}] ALTER COLUMN [{column}] {type} NOT NULL;"));
            }
        }

        static string Exec(string sql) => $"EXEC(N'{sql.Replace("'", "''")}');";
    }
}
