from django.core.management.base import BaseCommand

from core.demo import demo_seed


class Command(BaseCommand):
    help = "Load demo data (sandbox chip, agent profile, flow, leads) and an admin user."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args, admin_username: str, **options) -> None:
        result = demo_seed(admin_username=admin_username)
        self.stdout.write("Demo data created." if result.created else "Demo data already present.")
        if result.admin_password:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Admin user: {result.admin_username}  password: {result.admin_password}"
                )
            )
        else:
            self.stdout.write(
                f"Admin user {result.admin_username!r} already exists "
                f"(reset with: python manage.py changepassword {result.admin_username})."
            )
