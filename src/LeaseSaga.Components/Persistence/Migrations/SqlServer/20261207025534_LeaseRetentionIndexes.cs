using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace DynamicWorkers.LeaseSaga.Persistence.Migrations.SqlServer
{
    /// <inheritdoc />
    public partial class LeaseRetentionIndexes : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "IX_leases_CurrentState_ReceivedAt",
                table: "leases",
                columns: new[] { "CurrentState", "ReceivedAt" });

            migrationBuilder.CreateIndex(
                name: "IX_leases_EndedAt",
                table: "leases",
                column: "EndedAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_leases_CurrentState_ReceivedAt",
                table: "leases");

            migrationBuilder.DropIndex(
                name: "IX_leases_EndedAt",
                table: "leases");
        }
    }
}
